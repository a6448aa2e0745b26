import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { demoMembers } from '../../src/seed/demo.ts';

/**
 * `npm run demo` end to end: the script starts two Baton servers of its own (embedded databases
 * in a temporary folder, loopback ports), so this test needs nothing but the repository. Most of
 * its time is the two servers' first start (migrations, and the old payer's demo population).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let demo: ChildProcess | undefined;

// A demo still running when the test ends (it timed out) is stopped: SIGTERM makes it stop both its servers and remove their data.
afterEach(() => {
  if (demo && demo.exitCode === null && demo.signalCode === null) demo.kill('SIGTERM');
});

function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    demo = child;
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The lines of one report section, from its "== title" line to the next. */
function section(output: string, title: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`== ${title}`));
  if (start < 0) return [];
  const end = lines.findIndex((line, i) => i > start && line.startsWith('== '));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

describe('npm run demo', () => {
  it('runs a payer-to-payer request between two Baton servers to fulfilled and reports every side of it', async () => {
    const { code, stdout, stderr } = await runDemo();
    expect(code, `${stdout}\n${stderr}`).toBe(0);

    // The timeline: one Task version per stage, in the workflow's order, ending fulfilled.
    const stages = section(stdout, 'Task timeline')
      .map((line) => /^\s+\d+\s+(\S+)\s+\S+\s+\d{4}-/.exec(line)?.[1])
      .filter((stage) => stage !== undefined);
    expect(stages).toEqual(['created', 'validated', 'routed', 'matched', 'acknowledged', 'fulfilled']);

    // The old payer matched the member and says why.
    const decision = section(stdout, 'Match decision at the old payer').join('\n');
    expect(decision).toMatch(/outcome\s+matched, tier (deterministic|probabilistic)/);

    // What came over, with the Provenance naming the old payer as transmitter.
    const imported = section(stdout, 'Imported at the new payer').join('\n');
    expect(imported).toMatch(/ExplanationOfBenefit\s+[1-9]/);
    expect(imported).toMatch(/Provenance\/p2p-exchange-\S+ .*transmitter Organization\/old-payer/);

    // Both audit trails: the partner's token, $member-match and $everything at the old payer; the workflow's writes at the new one.
    const oldAudit = section(stdout, 'AuditEvents at the old payer').join('\n');
    for (const action of ['E token', 'E $member-match', 'E $everything']) expect(oldAudit).toContain(action);
    const newAudit = section(stdout, 'AuditEvents at the new payer').join('\n');
    expect(newAudit).toMatch(/U update\s+baton-workflow\s+Task\//);
    expect(newAudit).toMatch(/C update\s+baton-workflow\s+Provenance\/p2p-exchange-/);

    // Ids, not names: the enrolled member's name and birth date appear nowhere in the report.
    const memberId = /demographics of the old payer's (demo-patient-\d+)/.exec(stdout)?.[1];
    const member = demoMembers().find((m) => m.patientId === memberId);
    expect(member).toBeDefined();
    for (const name of member!.names) expect(stdout).not.toContain(name.family);
    expect(stdout).not.toContain(member!.birthDate);

    // Both servers' data is gone.
    const folder = /embedded databases under (\S+)/.exec(stdout)?.[1];
    expect(folder).toBeDefined();
    expect(existsSync(folder!)).toBe(false);
  }, 240_000);
});
