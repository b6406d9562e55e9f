// Abort signals the one way the runtime uses them: a hook that is always unhooked, and waits that end when the caller cancels.

/**
 * Runs `fn` once when `signal` aborts; synchronously, before returning, when it already has. Returns
 * the function that unhooks it: call it when the work ends, so a long-lived signal does not collect
 * listeners.
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    fn();
    return () => undefined;
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}

/** A limit on how long raceAbort waits, and what it throws when it is reached. */
interface RaceDeadline {
  ms: number;
  expired: () => Error;
}

/**
 * `work`'s outcome, unless `signal` aborts first (then `cancelled()` is thrown) or `deadline` passes
 * first (then its `expired()`). The work itself goes on; only this wait ends.
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, cancelled: () => Error, deadline?: RaceDeadline): Promise<T> {
  if (signal?.aborted) return Promise.reject(cancelled());
  if (deadline && deadline.ms <= 0) return Promise.reject(deadline.expired());
  if (!signal && !deadline) return work;
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const settle = (fn: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unhook();
      fn();
    };
    const timer = deadline ? setTimeout(() => settle(() => reject(deadline.expired())), deadline.ms) : undefined;
    const unhook = onAbort(signal, () => settle(() => reject(cancelled())));
    work.then(
      (v) => settle(() => resolve(v)),
      (e: unknown) => settle(() => reject(e)),
    );
  });
}

/** Waits `ms`, or throws `cancelled()` as soon as `signal` aborts (the timer is cleared then). */
export function sleep(ms: number, signal: AbortSignal | undefined, cancelled: () => Error): Promise<void> {
  if (signal?.aborted) return Promise.reject(cancelled());
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      unhook();
      resolve();
    }, ms);
    const unhook = onAbort(signal, () => {
      clearTimeout(timer);
      reject(cancelled());
    });
  });
}
