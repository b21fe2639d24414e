import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { MIGRATIONS_DIR, migrateToLatest } from '../../src/db/migrate';

/** Copies the migrations before `version` ('0006': 0001–0005) into `dir`, and returns `dir`. */
export function copyMigrationsBefore(version: string, dir: string): string {
  for (const file of readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_.*\.sql$/.test(f))) {
    if (file < version) copyFileSync(path.join(MIGRATIONS_DIR, file), path.join(dir, file));
  }
  return dir;
}

/**
 * Migrates `db` up to just before migration `version`, as the release before it left the
 * schema (from a copy of the migrations before it, removed afterwards). Returns what was applied.
 */
export async function migratedBefore<T>(db: Kysely<T>, version: string): Promise<string[]> {
  const before = mkdtempSync(path.join(os.tmpdir(), `sw-status-before-${version}-`));
  try {
    return await migrateToLatest(db, copyMigrationsBefore(version, before));
  } finally {
    rmSync(before, { recursive: true, force: true });
  }
}
