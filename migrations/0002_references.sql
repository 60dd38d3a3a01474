-- Interchange, message and document references the gateway writes come from one counter in
-- the database, so several gateway instances never write the same reference (UNB DE0020 must
-- be unique per sender; BDEW answers name our references to find what they answer).
CREATE TABLE reference_counter (
    name TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
INSERT INTO reference_counter (name, next_value) VALUES ('edifact', 1);
