"""simgate.policies"""
