"""masksearch.search_tool"""
