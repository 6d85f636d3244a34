roles = ["roles/*.hcl"]
