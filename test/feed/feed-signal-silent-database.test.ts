import { createFeedSignal } from '../../src/feed/feed-signal';
import { createLogger } from '../../src/logger';
import { eventually } from '../helpers/eventually';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The change feed's LISTEN connection is closed first when the service shuts down (its
 * long-polls answer at once), and the shutdown waits for it before it closes the listeners.
 * Ending a connection waits for the server to close its side, which a database gone silent (a
 * partition, a frozen VM) never does: the close must still end.
 */

let database: TestDatabase;
let freezer: Freezer;
beforeAll(async () => {
  database = await createTestDatabase(1);
  freezer = createFreezer();
});
afterAll(async () => {
  await freezer.close();
  await database.destroy();
});

test('When the database has gone silent, then closing the feed signal still ends (its connection cut), and a long-poll waiting on it is answered', async () => {
  const signal = createFeedSignal({
    connectionString: await freezer.relay(database.url),
    logger: createLogger('silent'),
  });
  await eventually(() => signal.listening(), 'the LISTEN connection is up');
  const waiting = signal.next(60_000);
  freezer.freeze();

  const closed = await Promise.race([
    signal.close().then(() => 'closed' as const),
    new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000).unref()),
  ]);

  expect(closed).toBe('closed');
  expect(await waiting).toBe('closed');
});
