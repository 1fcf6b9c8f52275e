"""masksearch.rewards"""
