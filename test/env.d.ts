import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: D1Migration[];
      UNMIGRATED_DB: D1Database;
      MIGRATION_DB: D1Database;
      MONEY_LIMBS_MIGRATION_DB: D1Database;
      DELIVERY_ROWS_MIGRATION_DB: D1Database;
      TEST_RATE_LIMITER: RateLimit;
    }
  }
}
