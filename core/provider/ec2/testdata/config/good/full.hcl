provider "ec2" {
  region                  = "eu-west-1"
  launch_template         = "roster-agent"
  launch_template_version = "3"
  instance_type           = "t3.small"
  subnets                 = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  security_groups         = ["sg-0123456789abcdef0"]
  instance_profile        = "roster-agent"
  key_name                = "ops"
  tags                    = { team = "web", cost-center = "42" }
  require_imdsv2          = false

  spot {
    max_price = "0.0125"
  }

  bootstrap {
    roster_url          = "https://releases.example.com/roster/v0.1.0/roster-linux-amd64"
    roster_sha256       = "sha256:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"
    fleet_key_parameter = "/roster/demo/fleet-key"
    plugin_dir          = "/opt/roster/plugins"
    log_level           = "debug"
  }
}
