provider "ec2" {
  region                  = "Virginia"
  launch_template         = "lt-xyz"
  launch_template_version = "latest"
  ami                     = "ami-12"
  instance_type           = "small"
  subnets                 = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0aaaaaaaaaaaaaaaa", "sub-1"]
  security_groups         = ["default"]
  instance_profile        = "has space"
  tags                    = { "roster:machine" = "x", "aws:foo" = "y" }
  unknown_thing           = 1

  spot {
    max_price = "cheap"
  }
  spot {
  }

  bootstrap {
    roster_url          = "http://example.com/roster"
    roster_sha256       = "abc"
    fleet_key_parameter = "fleet key"
    plugin_dir          = "plugins"
    log_level           = "loud"
  }
}
