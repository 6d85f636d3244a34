provider "ec2" {
  launch_template = "roster-agent"
  bootstrap {
    roster_url = "ftp://example.com/roster"
  }
  bootstrap {
    roster_url          = "s3://bucket-only"
    roster_sha256       = "abababababababababababababababababababababababababababababababab"
    fleet_key_parameter = "/roster/demo/fleet-key"
  }
}
