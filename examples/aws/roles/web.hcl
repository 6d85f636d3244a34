# roles/web.hcl: the web pool of the AWS example, as in examples/lamp but
# with the site fetched from S3 by each server (with the instance profile's
# credentials).

role "web" {
  plugin = "web"

  count {
    min = 2
    max = 8
  }

  scale {
    metric        = "busy_ratio"
    up_above      = 0.6
    down_below    = 0.1
    window        = "60s"
    cooldown_up   = "60s"
    cooldown_down = "5m"
  }

  # Every heartbeat is an SQS request: docs/aws.md prices the interval.
  health {
    interval        = "10s"
    timeout         = "3s"
    unhealthy_after = 3
    lost_after      = "45s"
  }

  provision { timeout = "10m" }
  drain { timeout = "60s" }

  register {
    balancer = "front"
    endpoint = "http"
  }

  config {
    document_root       = "s3://demo-roster-artifacts/sites/demo.tar.gz"
    php                 = true
    packages            = ["php-memcached"]
    install_missing     = false # bake the packages into the AMI: commissions stay fast
    memcached_mb        = 64
    max_request_workers = 50
    health_path         = "/health.php"
  }
}
