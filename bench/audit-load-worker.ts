import { parentPort, workerData } from 'node:worker_threads';
import type { AuditEvent } from '@medplum/fhirtypes';
import { contentHash } from '../src/audit/chain.ts';
import { arrayLiteral, type IndexColumns, indexColumns } from '../src/audit/event-index.ts';
import { eventIndexEntry } from '../src/audit/event-keys.ts';
import { type AuditPopulation, type LoadedChunk, TrailGenerator } from './audit-population.ts';

/*
 * A worker thread of bench/audit-population.ts's loadTrail: generates one chunk of the trail at a
 * time, computes what the sealer would for each event (content hash, search index entry) and
 * hands the rows over as PostgreSQL array literals, so that the writing thread only chains the
 * hashes and passes strings on (turning a chunk's 300,000 values into parameters there cost it
 * more than everything else it did, mostly in garbage collection).
 */
const generator = new TrailGenerator(workerData as AuditPopulation);
const port = parentPort;
port?.on('message', (task: { order: number; first: number; count: number; from: number; to: number }) => {
  const events = generator.chunk(task.count, task.from, task.to).map((event) => ({ event: event as AuditEvent & { id: string }, content: JSON.stringify(event) }));
  const positions = events.map((_, i) => String(task.first + i));
  const index = indexColumns(events.map(({ event }, i) => ({ position: task.first + i, eventSeq: task.first + i, eventId: event.id, recorded: event.recorded as string, ...eventIndexEntry(event) })));
  const literal = (column: IndexColumns['position']) => arrayLiteral(column as string[]);
  const chunk: LoadedChunk = {
    order: task.order,
    contentHashes: events.map(({ content }) => contentHash(JSON.parse(content))),
    events: { seq: arrayLiteral(positions), eventId: literal(index.eventId), recorded: literal(index.recorded), content: arrayLiteral(events.map((e) => e.content)) },
    index: {
      position: literal(index.position),
      eventSeq: literal(index.eventSeq),
      eventId: literal(index.eventId),
      recorded: literal(index.recorded),
      keys: literal(index.keys),
      ...(index.strings
        ? { strings: { position: literal(index.strings.position), code: literal(index.strings.code), value: literal(index.strings.value), exact: literal(index.strings.exact) } }
        : {}),
    },
  };
  port.postMessage(chunk);
});
