/**
 * What a partner's breaker transition does outside its coordinator: it is recorded in D1
 * (`partner_transitions`), the partner is marked paused while the breaker is open or half-open
 * (its API status reads `paused`, with the reason), disabled when the breaker gives up on it, and
 * every transition raises an operator alert. A transition told twice is recorded and alerted once.
 */
import { type AlertTarget, raiseAlert } from "../alerts/alerts";
import type { Transition } from "../delivery/breaker";
import { toHex, utf8 } from "../lib/bytes";
import type { D1 } from "../storage/d1";
import { disablePartnerStatements } from "../storage/deliveries";
import { insertTransitionStatement, pausePartnerStatement } from "../storage/partners";

async function transitionId(partnerId: string, transition: Transition): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", utf8(`${partnerId}\n${transition.at}\n${transition.to}`));
  return toHex(new Uint8Array(digest)).slice(0, 32);
}

export async function recordTransition(
  db: D1,
  target: AlertTarget,
  partnerId: string,
  transition: Transition,
): Promise<void> {
  const id = await transitionId(partnerId, transition);
  const statements = [insertTransitionStatement(db, { id: `ptr_${id}`, partner_id: partnerId, ...transition })];
  switch (transition.to) {
    case "open":
    case "half_open":
      statements.push(pausePartnerStatement(db, partnerId, transition.reason, transition.at));
      break;
    case "closed":
      statements.push(pausePartnerStatement(db, partnerId, null, transition.at));
      break;
    case "disabled":
      statements.push(
        pausePartnerStatement(db, partnerId, null, transition.at),
        ...disablePartnerStatements(db, partnerId, "failing", transition.at),
      );
      break;
  }
  await db.batch(statements);
  await raiseAlert(
    db,
    target,
    {
      type: "partner_breaker",
      partner_id: partnerId,
      from: transition.from,
      to: transition.to,
      reason: transition.reason,
    },
    `alr_${id}`,
  );
}
