"""The sans-IO BGP core: codec, finite state machine and RIBs. No sockets, no clocks."""
