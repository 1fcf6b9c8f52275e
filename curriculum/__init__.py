"""masksearch.curriculum"""
