from search.cli import entry

# The guard matters: a spawned helper process (the tracker's picture painter) imports this
# module as `__mp_main__` and must not run the CLI again.
if __name__ == "__main__":
    entry()
