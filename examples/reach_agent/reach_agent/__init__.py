"""An example user project: an agent that drives an arm through simgate's gateway (REST and MCP)
and a bench script that talks to a Feetech servo bus through the vendor SDK."""
