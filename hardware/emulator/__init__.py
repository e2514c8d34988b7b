"""Emulated servo buses (Feetech STS, Dynamixel Protocol 2.0) on a pseudo-terminal, whose servos
are PyBullet joints."""
