role "web" {
  plugin = "lamp"
  reuse  = true
  count {
    min = 2
    max = 8
  }
  scale {
    metric        = "busy_workers"
    up_above      = 0.75
    down_below    = 0.25
    window        = "1m"
    cooldown_up   = "45s"
    cooldown_down = "5m"
  }
  health {
    interval        = "10s"
    timeout         = "3s"
    unhealthy_after = 5
  }
  provision { timeout = "20m" }
  drain { timeout = "0s" }
  register {
    balancer = "front"
    endpoint = "https"
  }
  config {
    document_root  = "file://site"
    admin_password = "hunter2"
    database       = role.db.endpoints.postgres

    vhost {
      server_name = "example.org"
      aliases     = ["www.example.org"]
    }
    package {
      name = "php"
    }
    package {
      name    = "php-mysql"
      version = "8.2"
    }
    backend "main" {
      host = role.db.endpoints.postgres
    }
  }
}
