"""simgate.gateway"""
