"""simgate.autoresearch"""
