"""simgate.hardware"""
