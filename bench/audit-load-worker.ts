import { parentPort, workerData } from 'node:worker_threads';
import type { AuditEvent } from '@medplum/fhirtypes';
import { contentHash } from '../src/audit/chain.ts';
import { eventIndexEntry } from '../src/audit/event-keys.ts';
import { type AuditPopulation, type LoadedEvent, TrailGenerator } from './audit-population.ts';

/*
 * A worker thread of bench/audit-population.ts's loadTrail: generates one chunk of the trail at a
 * time and computes what the sealer would for each event (content hash, search index entry), so
 * that the main thread only chains the hashes and writes.
 */
const generator = new TrailGenerator(workerData as AuditPopulation);
const port = parentPort;
port?.on('message', (task: { index: number; count: number; from: number; to: number }) => {
  const events: LoadedEvent[] = generator.chunk(task.count, task.from, task.to).map((event) => {
    const content = JSON.stringify(event);
    return { id: event.id as string, recorded: event.recorded as string, content, contentHash: contentHash(JSON.parse(content)), ...eventIndexEntry(event as AuditEvent & { id: string }) };
  });
  port.postMessage({ index: task.index, events });
});
