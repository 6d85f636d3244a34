cluster = "demo"
roles   = ["roles/*.hcl"]
