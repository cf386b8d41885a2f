/**
 * A click on a tracking link: what the redirect knew (sent to the CLICKS queue after the answer)
 * and what D1 keeps of it. Nothing here identifies a person on its own: the address is truncated,
 * the User-Agent is reduced to a device class, OS and browser family, the referrer to its origin.
 */
import { z } from "zod";
import { SUB_ID_NAMES } from "./offer";

/** A sub id as a partner passes it: short text, kept as given. */
export const SUB_ID_MAX_LENGTH = 255;

/** One click as the redirect saw it; the consumer derives the stored row from it. */
export const ClickSeenSchema = z.object({
  click_id: z.string(),
  offer_id: z.string(),
  partner_id: z.string(),
  /** RFC 3339, the time the click id carries. */
  clicked_at: z.string(),
  sub_ids: z.partialRecord(z.enum(SUB_ID_NAMES), z.string()),
  country: z.string().nullable(),
  user_agent: z.string().nullable(),
  referrer: z.string().nullable(),
  ip_prefix: z.string().nullable(),
});

export type ClickSeen = z.infer<typeof ClickSeenSchema>;

/** What the redirects of one isolate send to the CLICKS queue: clicks packed many to a message. */
export const ClickMessageSchema = z.object({ v: z.literal(1), clicks: z.array(ClickSeenSchema) });

export type ClickMessage = z.infer<typeof ClickMessageSchema>;

/** A counted click, as D1 keeps it. */
export interface Click {
  click_id: string;
  offer_id: string;
  partner_id: string;
  clicked_at: string;
  sub1: string | null;
  sub2: string | null;
  sub3: string | null;
  sub4: string | null;
  sub5: string | null;
  country: string | null;
  /** desktop, mobile, tablet, tv, … (bowser's platform type). */
  device: string | null;
  os: string | null;
  browser: string | null;
  referrer: string | null;
  ip_prefix: string | null;
}
