// Remembers everything the benchmark started so it is torn down even on failure or Ctrl-C.
export interface CleanupStep {
  description: string;
  /** Normal teardown, awaited. */
  run: () => Promise<void>;
  /** Last-resort teardown for process 'exit', where nothing can be awaited. */
  runSync: () => void;
}

// Holds cleanup steps in LIFO order; each step runs at most once.
export class CleanupRegistry {
  private readonly steps: CleanupStep[] = [];

  // Registers a step and returns a function that runs just that step now (and unregisters it).
  add(step: CleanupStep): () => Promise<void> {
    this.steps.push(step);
    return async () => {
      const index = this.steps.indexOf(step);
      if (index < 0) return;
      this.steps.splice(index, 1);
      await step.run();
    };
  }

  // Runs every remaining step, newest first, continuing past failures.
  async runAll(log: (line: string) => void): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop() as CleanupStep;
      try {
        await step.run();
      } catch (error) {
        log(`cleanup "${step.description}" failed: ${(error as Error).message}`);
      }
    }
  }

  // Synchronous fallback used from the 'exit' handler.
  runAllSync(): void {
    while (this.steps.length > 0) {
      const step = this.steps.pop() as CleanupStep;
      try {
        step.runSync();
      } catch {
        // Nothing more can be done while the process exits.
      }
    }
  }

  // Installs signal and exit handlers so an interrupted run still tears everything down.
  // `beforeCleanup` runs first on a signal (e.g. to kill short-lived helpers that are not registered steps).
  installProcessHandlers(log: (line: string) => void, beforeCleanup: () => void = () => undefined): void {
    const onSignal = (signal: NodeJS.Signals): void => {
      log(`received ${signal}, cleaning up`);
      beforeCleanup();
      void this.runAll(log).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('exit', () => {
      beforeCleanup();
      this.runAllSync();
    });
  }
}
