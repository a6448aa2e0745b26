import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/*
 * The HTTP ceiling: a bare node:http server answering every request with one fixed FHIR
 * resource, the headers Baton sends with a read, and nothing else. Started as a child process
 * by bench/rest.ts; prints {"port": n} once listening and serves until killed.
 */

const body = Buffer.from(process.env.BENCH_FIXED_BODY ?? '{"resourceType":"Patient","id":"fixed"}');
const headers = {
  'Content-Type': 'application/fhir+json',
  'Content-Length': String(body.length),
  ETag: 'W/"1"',
  'Last-Modified': new Date().toUTCString(),
};

const server = createServer((_request, response) => {
  response.writeHead(200, headers);
  response.end(body);
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
