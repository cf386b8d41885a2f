-- The partner each event's payout was for, so that a conversion whose credit moves to another
-- partner never tells the new one of the old one's payout as its "previous" payout.
ALTER TABLE conversion_events ADD COLUMN payout_partner_id TEXT;
