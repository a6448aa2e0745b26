import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  it('defaults to 127.0.0.1:8080, embedded PGlite under ./data and the demo seed', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 8080, host: '127.0.0.1', baseUrl: 'http://127.0.0.1:8080/fhir', databaseUrl: undefined, seed: 'demo', adminToken: undefined });
    expect(config.dataDir).toMatch(/\/data$/);
  });

  it('reads every documented variable', () => {
    const config = loadConfig({
      PORT: '9000',
      HOST: '0.0.0.0',
      BATON_BASE_URL: 'https://payer.example.org/fhir/',
      DATABASE_URL: 'postgres://u@db/baton',
      BATON_DATA_DIR: '/var/baton',
      BATON_SEED: 'none',
      LOG_LEVEL: 'warn',
      BATON_PAYER_NAME: 'Old Plan',
      BATON_ADMIN_TOKEN: 'admin-secret',
      BATON_CLIENTS_FILE: '/etc/baton/clients.json',
      BATON_PAYER_IDENTIFIER: 'http://hl7.org/fhir/sid/us-npi|1234567893, urn:oid:2.16.840.1.113883.6.300|98765',
    });
    expect(config).toMatchObject({
      port: 9000,
      baseUrl: 'https://payer.example.org/fhir',
      databaseUrl: 'postgres://u@db/baton',
      dataDir: '/var/baton',
      seed: 'none',
      logLevel: 'warn',
      adminToken: 'admin-secret',
      clientsFile: '/etc/baton/clients.json',
      payer: {
        name: 'Old Plan',
        identifiers: [
          { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' },
          { system: 'urn:oid:2.16.840.1.113883.6.300', value: '98765' },
        ],
      },
    });
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ BATON_SEED: 'lots' }, 'BATON_SEED'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ BATON_BASE_URL: 'ftp://x' }, 'BATON_BASE_URL'],
    [{ BATON_PAYER_IDENTIFIER: 'no-bar' }, 'BATON_PAYER_IDENTIFIER'],
  ])('rejects %j naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(name);
  });
});
