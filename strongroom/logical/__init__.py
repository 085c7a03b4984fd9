"""The contract between core and plugins: requests, responses, storage, errors."""
