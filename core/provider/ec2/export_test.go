package ec2

// RenderUserData exposes the user data rendering to the tests.
var RenderUserData = renderUserData
