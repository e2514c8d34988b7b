"""Serial servo buses (Feetech STS, Dynamixel X) through the vendors' official SDKs."""
