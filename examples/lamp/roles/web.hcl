# roles/web.hcl: the lamp example's web pool, served by the built-in `web`
# plugin: apache2 with mod_php and a memcached per server, from Debian.
# docs/roles/web.md describes every config attribute.

role "web" {
  plugin = "web"

  count {
    min = 2
    max = 6
  }

  scale {
    metric        = "busy_ratio" # busy apache workers / max_request_workers
    up_above      = 0.6
    down_below    = 0.1
    window        = "30s"
    cooldown_up   = "30s"
    cooldown_down = "2m"
  }

  health {
    interval        = "5s"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "15s"
  }

  provision { timeout = "10m" } # installing packages can take minutes
  drain { timeout = "60s" }

  register {
    balancer = "front"
    endpoint = "http"
  }

  config {
    document_root       = "file://../site" # relative to this file
    php                 = true             # mod_php, so the prefork MPM
    packages            = ["php-memcached"]
    install_missing     = true
    memcached_mb        = 64
    max_request_workers = 50
    keep_alive_timeout  = 2
    health_path         = "/health.php"
  }
}
