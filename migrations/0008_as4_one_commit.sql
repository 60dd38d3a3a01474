-- Issue 16: a received AS4 message is journaled, its dedup key accepted and its request
-- recorded (raw, with the answer) in one commit; the evidence of the receipt we sign follows
-- in a later commit shared with other messages. What the sender signed is kept with the
-- request, so that its retry is recognised as the same content even when that evidence was
-- never written (the process stopped between the two commits, before the receipt went out).
ALTER TABLE as4_inbox ADD COLUMN sender TEXT;
ALTER TABLE as4_inbox ADD COLUMN signed TEXT;
CREATE INDEX as4_inbox_message ON as4_inbox (message_id);
