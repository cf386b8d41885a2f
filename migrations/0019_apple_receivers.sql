-- Networks as receivers of Apple's SKAdNetwork and AdAttributionKit postbacks
-- (docs/apple-postbacks.md). `apple` holds the receiver's settings (ad network ids, sources);
-- apple_ad_networks finds the network of a postback posted to Apple's well-known path by its
-- signed ad network id, and keeps each id to one network.
ALTER TABLE networks ADD COLUMN apple TEXT;

CREATE TABLE apple_ad_networks (
  ad_network_id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL REFERENCES networks (id)
) WITHOUT ROWID;
CREATE INDEX apple_ad_networks_network ON apple_ad_networks (network_id);
