// Package openwrt holds the tests of famguard's OpenWrt package: the feed
// Makefile in famguard/ with its two packages (famguard, and famguard-www:
// the parents' page, rpcd plugin and ACL, LuCI menu entry,
// famguard-parent-login), their files (procd init script, UCI config,
// firewall include, NTP hotplug, uci-defaults, maintainer scripts) and the
// .ipk files scripts/ipk.sh builds. The scripts run under busybox sh
// (OpenWrt's shell) with recording stand-ins for procd, UCI, uhttpd, rpcd
// and the famguard binary.
package openwrt
