# roles/web.hcl: a pool of 2 to 4 web servers served by the built-in
# `static` plugin, grown and shrunk on normalised system load.

role "web" {
  plugin = "static"

  count {
    min = 2
    max = 4
  }

  scale {
    metric        = "load" # or any metric the plugin reports
    up_above      = 0.75
    down_below    = 0.25
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

  provision { timeout = "2m" }
  drain { timeout = "10s" }

  register {
    balancer = "front"
    endpoint = "http"
  }

  # Checked against the schema the static plugin declares
  # (`roster plugins` prints it).
  config {
    port            = 0    # a free port
    provision_delay = "1s" # pretend provisioning takes a while
  }
}
