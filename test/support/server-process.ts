import { type ChildProcess, spawn } from 'node:child_process';

/** Starts the server (by default the TypeScript through tsx, as `npm start`; `entry` for the build); resolves once it says its port. */
export function startServer(env: Record<string, string>, entry: string[] = ['--import', 'tsx', 'src/server.ts']): Promise<{ child: ChildProcess; port: number; logs: () => string }> {
  const child = spawn(process.execPath, entry, {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /"port":(\d+)/.exec(output);
      if (match) resolve({ child, port: Number(match[1]), logs: () => output });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${output.slice(0, 2000)}`)));
  });
}

/** Sends `signal` and waits for the exit. */
export async function stopServer(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}
