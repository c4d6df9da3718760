/etc/famguard/
