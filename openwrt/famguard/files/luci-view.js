'use strict';
'require view';

// LuCI menu entry for famguard: the parents' page lives at /famguard/ (static
// files served by uhttpd, talking to the same /ubus endpoint as LuCI). This
// view only links to it, so LuCI users find it under Services.
return view.extend({
	render: function() {
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, _('Family (famguard)')),
			E('p', {}, _('Who is online, pause, extra time and new devices, on a phone-friendly page.')),
			E('p', {}, E('a', { 'class': 'btn cbi-button cbi-button-action', 'href': '/famguard/' }, _('Open the family page')))
		]);
	},
	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
