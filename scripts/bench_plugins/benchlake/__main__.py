from benchlake import BenchLake
from plugin_sdk import serve

if __name__ == "__main__":
    serve(BenchLake)
