# roles/db.hcl: the lamp example's database, served by the built-in `db`
# plugin: a private PostgreSQL cluster from Debian's packages, with the
# `lamp` database, user and schema (sql/schema.sql) that the site reads.
# docs/roles/db.md describes every config attribute, and read replicas.

role "db" {
  plugin = "db"

  # One primary. Read replicas are a second role with
  # replica_of = role.db.endpoints.postgres (see docs/roles/db.md).
  count {
    min = 1
    max = 1
  }

  health {
    interval        = "5s"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "15s"
  }

  provision { timeout = "10m" } # installing packages can take minutes
  drain { timeout = "30s" }     # sessions in a transaction are waited for

  config {
    database        = "lamp"
    user            = "lamp"
    password        = "lamp-example-only"        # an example: choose your own
    schema          = "file://../sql/schema.sql" # relative to this file
    shared_buffers  = "64MB"
    max_connections = 50 # the site connects only on a cache miss
    install_missing = true
  }
}
