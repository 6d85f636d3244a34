# roles/web.hcl: the lamp example's web pool, served by the built-in `web`
# plugin: apache2 with mod_php and a memcached per server, from Debian.
# docs/roles/web.md describes every config attribute.

role "web" {
  plugin = "web"

  count {
    min = 2
    max = 5
  }

  # The pool scales on the busy-worker ratio of each server, not on system
  # load: on one host every server shares the same cores, so the load
  # cannot fall by adding servers, while each server's share of the
  # requests in flight does. The windows are short so that the example
  # reacts within seconds; production pools use 30s windows and minutes of
  # cooldown_down.
  scale {
    metric        = "busy_ratio" # busy apache workers / max_request_workers
    up_above      = 0.6
    down_below    = 0.25
    window        = "10s"
    cooldown_up   = "10s"
    cooldown_down = "20s"
  }

  health {
    interval        = "2s"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "10s"
  }

  provision { timeout = "10m" } # installing packages can take minutes
  drain { timeout = "60s" }

  register {
    balancer = "front"
    endpoint = "http"
  }

  config {
    document_root   = "file://../site" # relative to this file
    php             = true             # mod_php, so the prefork MPM
    packages        = ["php-memcached", "php-pgsql"]
    install_missing = true
    memcached_mb    = 64
    # Few workers, so that busy_ratio means something at example scale;
    # haproxy's server_maxconn matches it.
    max_request_workers = 8
    # haproxy keeps the clients' connections alive; toward apache each
    # request has its own, so that no idle connection holds a prefork worker
    # (it would count as busy) and a drain ends as soon as requests do.
    keep_alive  = false
    health_path = "/health.php"
    # Where the site finds the db, as SetEnv variables for its pages
    # ($_SERVER['LAMP_DB_HOST_PORT']). The db's address is the endpoint of
    # its ready server: the web servers wait for one, and when the db moves
    # roster hands them the new address (Configure: a graceful reload). The
    # password is the example's, not a secret.
    env = {
      LAMP_DB_HOST_PORT = role.db.endpoints.postgres
      LAMP_DB           = "dbname=lamp user=lamp password=lamp-example-only connect_timeout=2"
    }
  }
}
