provider "ec2" {
  launch_template_version = 3
  subnets                 = "subnet-0aaaaaaaaaaaaaaaa"
  require_imdsv2          = "maybe"
  bootstrap {
    roster_url          = "s3://b/roster"
    roster_sha256       = "abababababababababababababababababababababababababababababababab"
    fleet_key_parameter = "/roster/demo/fleet-key"
  }
}
