import ParleyCryptoBench

// `parley-bench crypto` alone: the same command, built without the relay and client stacks.
Crypto.main()
