-- Carriers: the carrier a receptionist's number is on (`twilio`, `telnyx`, `plivo`, `vonage`,
-- `signalwire` or `exotel`). Calls already record theirs (`calls.carrier`) with the carrier's own
-- call id (`calls.carrier_call_sid`, unique: carriers' id formats do not collide).

ALTER TABLE receptionists ADD COLUMN carrier TEXT NOT NULL DEFAULT 'twilio';
