-- The lamp example's schema and seed, run once by the db role (as the
-- `lamp` user, in the `lamp` database, in one transaction) right after the
-- cluster is created. The site reads the greeting back.

CREATE TABLE greeting (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO greeting (message) VALUES ('Hello from the db role');
