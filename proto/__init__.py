"""Protocol definitions (.proto) and the Python code grpcio-tools generates from them."""
