/**
 * A background job of the audit trail (the sealer, the archiver): `pass` runs at once and then
 * every `intervalMs`, never two at a time, without keeping the process alive. stop() ends the
 * schedule and waits for the pass in flight, which reads `stopping()` to end early.
 */
export function runInBackground(pass: (stopping: () => boolean) => Promise<void>, intervalMs: number): { stop(): Promise<void> } {
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  const stopping = () => stopped;
  const tick = (): void => {
    if (stopped || inFlight) return;
    inFlight = pass(stopping).finally(() => (inFlight = undefined));
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  tick();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
    },
  };
}
