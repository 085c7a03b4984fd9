"""Real ACME clients (certbot, lego, uacme) against pebble and against strongroom's ACME server."""
