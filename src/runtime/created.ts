// What this process creates on the machine (VM run directories, cgroups, owned workspaces, workspace
// images, benchmark temp directories), recorded only while a leak check watches: the check then judges
// its own run's leftovers, not those of a daemon or another run beside it. Costs one branch otherwise.

let watchers = 0;
const paths = new Set<string>();

/** Records a path this process just created (a directory or file it is responsible for removing). */
export function recordCreated(path: string): void {
  if (watchers > 0) paths.add(path);
}

export interface CreatedWatch {
  /** Every path recorded since the first open watch started. */
  created(): string[];
  /** Ends this watch; the record is dropped when the last one ends. Idempotent. */
  stop(): void;
}

/** Starts recording (nested watches share one record). */
export function watchCreated(): CreatedWatch {
  watchers++;
  let open = true;
  return {
    created: () => [...paths],
    stop: () => {
      if (!open) return;
      open = false;
      if (--watchers === 0) paths.clear();
    },
  };
}
