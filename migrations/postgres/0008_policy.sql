-- What a key or a team may ask for (allowed models and qualities, the most images, pixels,
-- frames and partial images per request): a JSON object, NULL when nothing is restricted.
ALTER TABLE teams ADD COLUMN policy TEXT;
ALTER TABLE api_keys ADD COLUMN policy TEXT;
