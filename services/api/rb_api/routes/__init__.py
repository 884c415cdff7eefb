"""HTTP routes: thin adapters from requests to the API's logic modules."""
