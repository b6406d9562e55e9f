// One HTTP session's SSE events, kept so a client that lost a response stream can resume it (Last-Event-ID).
// Bounded: a session keeps at most `maxEvents` events and `maxBytes` of them; the oldest go first.
import type { EventId, EventStore, StreamId } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

interface Stored {
  id: EventId;
  streamId: StreamId;
  message: JSONRPCMessage;
  bytes: number;
}

/** Event ids are `<streamId>_<sequence>`: stream ids are UUIDs the transport makes (no `_`). */
const EVENT_ID = /^([0-9a-f-]{1,64}|_GET_stream)_(\d{1,15})$/;

export class BoundedEventStore implements EventStore {
  private readonly events: Stored[] = [];
  private bytes = 0;
  private seq = 0;

  constructor(
    private readonly maxEvents = 256,
    private readonly maxBytes = 2 * 1024 * 1024,
  ) {}

  get size(): { events: number; bytes: number } {
    return { events: this.events.length, bytes: this.bytes };
  }

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = `${streamId}_${++this.seq}`;
    const bytes = Buffer.byteLength(JSON.stringify(message));
    // An event larger than the whole budget gets an id but is not kept: a resume after it is refused (400), not silently short.
    if (bytes <= this.maxBytes) {
      this.events.push({ id, streamId, message, bytes });
      this.bytes += bytes;
      while (this.events.length > this.maxEvents || this.bytes > this.maxBytes) {
        const old = this.events.shift();
        if (!old) break;
        this.bytes -= old.bytes;
      }
    }
    return Promise.resolve(id);
  }

  /** The stream of an event still held; undefined (the SDK answers 400) for an id we never made or no longer hold. */
  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    if (!EVENT_ID.test(eventId)) return Promise.resolve(undefined);
    return Promise.resolve(this.events.find((e) => e.id === eventId)?.streamId);
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const at = this.events.findIndex((e) => e.id === lastEventId);
    if (at < 0) return "";
    const streamId = (this.events[at] as Stored).streamId;
    // A copy: sending may store new events.
    for (const e of this.events.slice(at + 1)) if (e.streamId === streamId) await send(e.id, e.message);
    return streamId;
  }

  clear(): void {
    this.events.length = 0;
    this.bytes = 0;
  }
}
